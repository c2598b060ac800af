//! Sequences worth keeping as plain tests: every kind of rotation, and each failure the model
//! found, shrunk (the comment says what the tailer did wrong).

use super::Op::*;
use super::run;

#[test]
fn rotations_of_every_kind_lose_nothing() {
    run(&[
        Append(3),
        Rescan,
        Poll,
        AckAll,
        RotateRename,
        Append(2),
        CopyTruncate,
        Append(2),
        Rescan,
        Poll,
        Ack(0),
        CopyInGlob,
        Append(1),
        Rescan,
        Poll,
        Restart,
        Append(2),
        Rescan,
        Poll,
        Crash,
        Rescan,
        Poll,
    ]);
}

/// Found by the model (shrunk): a `cp` inside the glob of a file that then grew, found together
/// with the grown file, was told apart from a copy being written only by waiting; after the wait
/// it was read whole as a new file (L0 sent twice). A file whose bytes are still a prefix of a
/// followed file's after the wait is a finished copy of that file's earlier content.
#[test]
fn a_copy_of_a_files_earlier_content_is_not_read_again() {
    run(&[Append(1), CopyInGlob, Append(1), CopyTruncate, Rescan, Append(1)]);
}

/// The same after a restart: a held copy is identified afresh against its original, which has
/// grown since the copy was made.
#[test]
fn a_held_copy_is_still_a_copy_after_a_restart() {
    run(&[
        Append(2),
        Rescan,
        Poll,
        AckAll,
        CopyInGlob,
        Append(1),
        Rescan,
        Poll,
        Restart,
        Append(2),
        Rescan,
        Poll,
    ]);
}

/// Found by the model (shrunk): app.log and a `cp` of it made before it grew, both new to the
/// tailer (after a restart): the copy, found first, was followed and app.log held as a copy of
/// it, so that nothing more of app.log was ever read (L4 lost).
#[test]
fn a_file_found_together_with_an_earlier_copy_of_itself_is_read() {
    run(&[Append(3), Rescan, Delete(0), Append(1), Restart, CopyInGlob, Append(1)]);
}

/// Found by the model (shrunk): a `cp` of a followed file, undecided while it might still be
/// written, and its original closed as idle meanwhile: the copy was then read whole.
#[test]
fn an_original_stays_open_while_a_copy_of_it_is_told_apart() {
    run(&[
        Append(1),
        Rescan,
        CopyInGlob,
        Append(1),
        Poll,
        AckAll,
        Rescan,
        Wait(30),
        Housekeep,
        Wait(30),
        Rescan,
        Poll,
    ]);
}

/// Found by the model (shrunk; 5000 random sequences): app.log, copytruncated while the tailer
/// was down, is held undecided while empty; it grows and is `cp`ed, and the copy was taken for a
/// new file, since the undecided file's first bytes were those it had when found (none). After
/// a restart both were read whole (L1 twice).
#[test]
fn a_copy_of_a_file_that_grew_while_undecided_is_a_copy() {
    run(&[
        Append(1),
        Rescan,
        Restart,
        CopyTruncate,
        Rescan,
        Append(1),
        CopyInGlob,
        Append(1),
        Rescan,
        Restart,
    ]);
}

/// Found by the model (shrunk) after the first bytes of undecided files were refreshed only as
/// they grew: app.log, found empty and undecided, grew (L1) and was copytruncated; its copy was
/// held as a copy of app.log by the first bytes app.log no longer had, and never read (L1 lost).
#[test]
fn a_copy_of_what_an_undecided_file_held_is_read() {
    run(&[Append(1), CopyTruncate, Rescan, Append(1), Rescan, CopyTruncate, RotateRename]);
}

/// Found by the model (shrunk) once records could be written in halves; the model's fault: the
/// rest of a record, written to a new app.log after a rotation, made the model take that file
/// for one the tailer had seen, and it is renamed out of the glob before any rescan.
#[test]
fn a_records_rest_in_the_next_file_renamed_away() {
    super::run_with(false, true, &[Append(1), AppendHalf, Rescan, RotateRename, Append(1), RenameOut]);
}

/// Found by the model (shrunk); the model's fault: app.log truncated after a record's first half,
/// so that the file then begins with the rest of it (its continuation lines, a record of their
/// own); the model took that for a record sent in pieces with no cut.
#[test]
fn a_file_may_begin_with_a_records_rest() {
    super::run_with(
        false,
        true,
        &[
            Append(1),
            Truncate,
            Rescan,
            AppendPartial,
            AppendHalf,
            Truncate,
            Append(1),
            Poll,
            Restart,
            RenameOut,
        ],
    );
}
