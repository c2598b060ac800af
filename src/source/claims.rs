//! Which source reads which file: a file matched by two file-sources (overlapping globs) is read
//! by the first that claims it; the other reports the conflict instead of producing the lines
//! twice.

use std::collections::HashMap;
use std::sync::Mutex;

use super::fingerprint::FileId;

#[derive(Debug, Default)]
pub struct Claims {
    owners: Mutex<HashMap<FileId, String>>,
}

impl Claims {
    /// Claims `id` for `connector`; if another connector holds it, returns that one's name.
    pub fn claim(&self, id: FileId, connector: &str) -> Result<(), String> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        match owners.get(&id) {
            Some(owner) if owner != connector => Err(owner.clone()),
            Some(_) => Ok(()),
            None => {
                owners.insert(id, connector.to_string());
                Ok(())
            }
        }
    }

    pub fn release(&self, id: FileId, connector: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.get(&id).is_some_and(|o| o == connector) {
            owners.remove(&id);
        }
    }

    pub fn release_all(&self, connector: &str) {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, o| o != connector);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_wins_until_released() {
        let claims = Claims::default();
        let id = FileId { dev: 1, ino: 2 };
        assert!(claims.claim(id, "a").is_ok());
        assert!(claims.claim(id, "a").is_ok(), "claiming again is fine");
        assert_eq!(claims.claim(id, "b"), Err("a".to_string()));
        claims.release(id, "b");
        assert_eq!(claims.claim(id, "b"), Err("a".to_string()), "only the owner releases");
        claims.release_all("a");
        assert!(claims.claim(id, "b").is_ok());
    }
}
