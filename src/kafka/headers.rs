//! A consumed record's headers as bytes.
//!
//! rdkafka's `Headers` API turns every header name into a `&str` and panics on a name that is not
//! UTF-8, which any producer may send: one such record would crash the sink, which would restart,
//! seek back to it and crash again for ever. So the sink reads names and values through
//! librdkafka itself, as the bytes they are.

use std::ffi::{CStr, c_char, c_void};

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;

/// Every header of `m`, in order: name and value (`None`: a null value) as bytes.
pub fn raw<'a>(m: &'a BorrowedMessage<'a>) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
    let mut out = Vec::new();
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is a message librdkafka keeps alive for `'a`; the header list it returns
    // belongs to the message and lives as long.
    let err = unsafe { rd::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return out; // RD_KAFKA_RESP_ERR__NOENT: the record has no headers
    }
    for idx in 0.. {
        let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
            (std::ptr::null(), std::ptr::null(), 0);
        // SAFETY: `hdrs` is the live list above; librdkafka fills the three out-pointers with
        // pointers into it (a name is NUL-terminated; a value is `size` bytes, or null).
        let err = unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        // SAFETY: as above; both borrow from the message, which outlives `'a`.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value =
            (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value as *const u8, size) });
        out.push((name, value));
    }
    out
}
