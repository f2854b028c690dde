//! The WSGI environ (PEP 3333): CGI variables and `HTTP_*` headers as native strings
//! (latin-1: each byte one character, so `value.encode('latin-1')` gives the bytes back), and
//! the `wsgi.*` keys.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{ffi, intern};

use crate::app::environ::{SERVER_SOFTWARE, SSL_NAMES};
use crate::app::Environ;

use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;

/// The environ dict of one request.
pub fn build<'py>(
    py: Python<'py>,
    env: &Environ,
    input: Bound<'py, WsgiInput>,
    errors: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    cgi(py, &dict, env)?;
    ssl(py, &dict, env)?;
    headers(py, &dict, env)?;
    dict.set_item(intern!(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
    dict.set_item(intern!(py, "wsgi.url_scheme"), env.url_scheme())?;
    if env.url_scheme() == "https" {
        dict.set_item(intern!(py, "HTTPS"), "on")?;
    }
    dict.set_item(intern!(py, "wsgi.input"), input)?;
    dict.set_item(intern!(py, "wsgi.errors"), errors)?;
    dict.set_item(intern!(py, "wsgi.multithread"), true)?;
    dict.set_item(intern!(py, "wsgi.multiprocess"), false)?;
    dict.set_item(intern!(py, "wsgi.run_once"), false)?;
    dict.set_item(
        intern!(py, "wsgi.file_wrapper"),
        py.get_type::<FileWrapper>(),
    )?;
    // wsgi.input ends where the body ends (Content-Length or chunked), so an application may
    // read it to its end; werkzeug (Flask) reads a chunked body only when told so.
    dict.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    Ok(dict)
}

fn cgi(py: Python<'_>, dict: &Bound<'_, PyDict>, env: &Environ) -> PyResult<()> {
    let peer = env.remote_addr();
    dict.set_item(intern!(py, "REQUEST_METHOD"), env.method())?;
    dict.set_item(intern!(py, "SCRIPT_NAME"), "")?;
    dict.set_item(intern!(py, "PATH_INFO"), latin1(py, env.path_info_bytes()))?;
    dict.set_item(intern!(py, "QUERY_STRING"), env.query_string())?;
    dict.set_item(intern!(py, "REQUEST_URI"), env.request_uri())?;
    dict.set_item(intern!(py, "RAW_URI"), env.request_uri())?;
    dict.set_item(intern!(py, "SERVER_NAME"), env.server_name())?;
    dict.set_item(intern!(py, "SERVER_PORT"), env.server_port().to_string())?;
    dict.set_item(intern!(py, "SERVER_PROTOCOL"), env.protocol())?;
    dict.set_item(intern!(py, "SERVER_SOFTWARE"), SERVER_SOFTWARE)?;
    dict.set_item(intern!(py, "REMOTE_ADDR"), peer.ip().to_string())?;
    dict.set_item(intern!(py, "REMOTE_PORT"), peer.port().to_string())?;
    if let Some(value) = env.header("content-type") {
        dict.set_item(intern!(py, "CONTENT_TYPE"), value)?;
    }
    if let Some(value) = env.header("content-length") {
        dict.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
    }
    Ok(())
}

/// mod_ssl's `SSL_*` keys of a TLS connection, as the Rust environ has them.
fn ssl(py: Python<'_>, dict: &Bound<'_, PyDict>, env: &Environ) -> PyResult<()> {
    for name in SSL_NAMES {
        if let Some(value) = env.ssl_var(name) {
            dict.set_item(name, latin1(py, value.as_bytes()))?;
        }
    }
    Ok(())
}

/// `HTTP_*` keys, as the Rust environ has them: a header sent several times is joined with
/// `,` (`Cookie` with `; `), and `HTTP_HOST` follows an absolute-form target.
fn headers(py: Python<'_>, dict: &Bound<'_, PyDict>, env: &Environ) -> PyResult<()> {
    for (key, value) in env.http_vars() {
        dict.set_item(key, latin1(py, &value))?;
    }
    Ok(())
}

/// Bytes as a native string: each byte one character (latin-1, as PEP 3333 says).
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if bytes.is_ascii() {
        if let Ok(ascii) = std::str::from_utf8(bytes) {
            return PyString::new(py, ascii);
        }
    }
    let len = bytes.len() as ffi::Py_ssize_t;
    // SAFETY: `bytes` is valid for `len` bytes during the call, and the GIL is held (`py`).
    // Latin-1 decoding cannot fail; a null result (out of memory) falls back to a lossy copy.
    unsafe {
        let decoded = ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null());
        match Bound::from_owned_ptr_or_opt(py, decoded) {
            Some(text) => text.cast_into_unchecked(),
            None => {
                drop(PyErr::take(py));
                PyString::new(py, &String::from_utf8_lossy(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::app::Input;
    use crate::python::{attach, start};
    use crate::test_support::{environ, tls_info};

    /// The keys `build` gives `env`, with their values.
    fn built(env: &Environ) -> Vec<(String, String)> {
        start(None).expect("Python starts");
        let mut body: &[u8] = b"";
        let mut input = Input::new(&mut body);
        attach(|py| {
            let (wsgi_input, _closing) = WsgiInput::lend(py, &mut input).unwrap();
            let dict = build(py, env, wsgi_input, &py.None().into_bound(py)).unwrap();
            let strings = dict
                .iter()
                .filter_map(|(k, v)| Some((k.extract().ok()?, v.extract().ok()?)));
            strings.collect()
        })
    }

    #[test]
    fn a_tls_connection_gives_the_ssl_keys_and_plain_http_none() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let tls = environ(raw).with_tls(Some(Arc::new(tls_info("python-ssl", true))));
        let keys = built(&tls);
        for name in SSL_NAMES {
            let value = tls.get(name).expect("every SSL_ variable").into_owned();
            assert!(
                keys.contains(&(name.to_string(), value)),
                "{name}: {keys:?}"
            );
        }
        let plain = built(&environ(raw));
        assert!(
            plain.iter().all(|(k, _)| !k.starts_with("SSL_")),
            "{plain:?}"
        );
        assert!(
            plain.iter().any(|(k, _)| k == "REQUEST_METHOD"),
            "{plain:?}"
        );
    }
}
