//! Process-wide discipline for libxml2 and xmlsec, which keep global state that
//! samael guards only while initialising.
//!
//! Every parse, verification or signature in the process happens under one lock,
//! and the C libraries' own error output is routed into `tracing` (escaped, at
//! debug level) instead of being written raw to stderr, where text taken from a
//! hostile document could forge log lines.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Mutex, Once};

use samael::crypto::{CertificateDer, CryptoProvider as _, XmlSec};

static LOCK: Mutex<()> = Mutex::new(());
static INITIALISED: Once = Once::new();

/// The leading fields of libxml2's `xmlError` (stable since libxml2 2.6).
#[repr(C)]
struct XmlError {
    domain: c_int,
    code: c_int,
    message: *const c_char,
}

type XmlSecErrorsCallback = unsafe extern "C" fn(
    file: *const c_char,
    line: c_int,
    func: *const c_char,
    error_object: *const c_char,
    error_subject: *const c_char,
    reason: c_int,
    msg: *const c_char,
);
type StructuredErrorFunc = unsafe extern "C" fn(user_data: *mut c_void, error: *const XmlError);

extern "C" {
    fn xmlSecErrorsSetCallback(callback: Option<XmlSecErrorsCallback>);
    fn xmlSecErrorsDefaultCallbackEnableOutput(enabled: c_int);
    fn xmlSetStructuredErrorFunc(context: *mut c_void, handler: Option<StructuredErrorFunc>);
}

/// Runs `f` holding the process-wide XML security lock.
pub(super) fn locked<T>(f: impl FnOnce() -> T) -> T {
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // xmlsec-openssl installs its own error callback when samael first initialises
    // it: make that happen (a key load that fails at once) before ours goes in.
    INITIALISED.call_once(|| {
        // SAFETY: stores a flag; xmlsec's default callback then prints nothing.
        unsafe { xmlSecErrorsDefaultCallbackEnableOutput(0) };
        let _ = XmlSec::verify_signed_xml(b"<a/>", &CertificateDer::from(Vec::new()), None);
    });
    // libxml2's handler is per thread, and blocking threads come and go: set both
    // every time (two pointer stores).
    // SAFETY: both functions only store the pointer; the handlers below are
    // `extern "C"`, never unwind, and read their arguments only when non-null.
    unsafe {
        xmlSecErrorsSetCallback(Some(xmlsec_error));
        xmlSetStructuredErrorFunc(std::ptr::null_mut(), Some(libxml_error));
    }
    f()
}

unsafe extern "C" fn xmlsec_error(
    _file: *const c_char,
    _line: c_int,
    func: *const c_char,
    _error_object: *const c_char,
    _error_subject: *const c_char,
    reason: c_int,
    msg: *const c_char,
) {
    // SAFETY: xmlsec passes NUL-terminated strings or null.
    let (func, msg) = unsafe { (text(func), text(msg)) };
    tracing::debug!(target: "samlgate::xmlsec", reason, func = %func, message = %msg, "xmlsec error");
}

unsafe extern "C" fn libxml_error(_user_data: *mut c_void, error: *const XmlError) {
    if error.is_null() {
        return;
    }
    // SAFETY: libxml2 passes a valid xmlError for the duration of the call.
    let (domain, code, message) =
        unsafe { ((*error).domain, (*error).code, text((*error).message)) };
    tracing::debug!(target: "samlgate::xmlsec", domain, code, message = %message.trim_end(), "libxml2 error");
}

/// A C string as escaped UTF-8 (control characters shown, never interpreted).
unsafe fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        return String::new();
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let raw = unsafe { CStr::from_ptr(pointer) };
    raw.to_string_lossy().escape_default().to_string()
}
