//! Method `fs`: serving the files under a document root, as an [`Application`].
//!
//! GET and HEAD only (405 otherwise). Files go out with the kernel's zero-copy path (never
//! read into memory), with `Content-Type` from the extension, `Last-Modified`, a strong
//! `ETag`, conditional requests (412, 304) and single byte ranges (206, 416). A directory is
//! redirected to its `/` form, then answered with its `index.html`, or a listing when
//! `display_index` is on, or 403. Nothing outside the root is ever opened (see
//! `open_beneath`); whatever is refused or missing gets the same 404.

mod listing;
mod resolve;
mod validators;

use std::fs::{File, Metadata};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT_RANGES, ALLOW, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    LAST_MODIFIED, LOCATION,
};
use http::StatusCode;

use rustix::fs::{Mode, OFlags};

use crate::app::{Application, Body, Environ, Input, Reply};

pub(crate) use resolve::{open_beneath, Opened};
pub(crate) use validators::{Decision, Span, Validators};

/// Serves the files under a document root.
#[derive(Debug)]
pub struct FileServer {
    /// The document root, as given (for messages).
    root_path: PathBuf,
    /// The document root, open (`O_PATH`): every file is opened beneath it.
    root: OwnedFd,
    /// Whether a directory without `index.html` is listed (else 403).
    display_index: bool,
}

impl FileServer {
    /// Serves `root`, which must be an existing, readable directory (on Linux 5.6 or later,
    /// for `openat2`).
    pub fn new(root: impl AsRef<Path>, display_index: bool) -> io::Result<Self> {
        let root_path = root.as_ref().to_path_buf();
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root = rustix::fs::open(&root_path, flags, Mode::empty())?;
        resolve::open_relative(&root, b".")?;
        Ok(FileServer {
            root_path,
            root,
            display_index,
        })
    }

    /// The document root, as given.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    fn serve_dir(&self, env: &Environ, dir: Opened) -> Reply {
        if !dir.trailing_slash {
            return redirect_to_slash(env);
        }
        if let Ok(index) = resolve::open_relative(&dir.file, b"index.html") {
            if let Ok(meta) = index.metadata().map_err(drop).and_then(only_files) {
                return serve_file(env, index, &meta, Path::new("index.html"));
            }
        }
        if !self.display_index {
            return text(StatusCode::FORBIDDEN, "Forbidden\n");
        }
        match listing::page(&dir.file, &env.path_info(), !dir.at_root) {
            Ok(html) => Reply::new(StatusCode::OK)
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )
                .body(Body::Bytes(Bytes::from(html))),
            Err(_) => not_found(),
        }
    }
}

impl Application for FileServer {
    fn call(&self, env: &Environ, _input: &mut Input<'_>) -> Reply {
        if !matches!(env.method(), "GET" | "HEAD") {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
                .header(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        let Some(target) = open_beneath(&self.root, env.raw_path()) else {
            return not_found();
        };
        match target.file.metadata() {
            Ok(meta) if meta.is_dir() => self.serve_dir(env, target),
            Ok(meta) if meta.is_file() && !target.trailing_slash => {
                let name = env.path_info();
                serve_file(env, target.file, &meta, Path::new(name.as_ref()))
            }
            _ => not_found(),
        }
    }
}

fn only_files(meta: Metadata) -> Result<Metadata, ()> {
    meta.is_file().then_some(meta).ok_or(())
}

/// Answers with `file` (named `name`, for its type), or 412, 304, 206 or 416 as the request
/// asks.
fn serve_file(env: &Environ, mut file: File, meta: &Metadata, name: &Path) -> Reply {
    let validators = Validators::of(meta);
    let span = match validators.decide(env, meta.len()) {
        Decision::PreconditionFailed => {
            return text(StatusCode::PRECONDITION_FAILED, "Precondition Failed\n")
        }
        Decision::NotModified => {
            return with_validators(Reply::new(StatusCode::NOT_MODIFIED), &validators)
        }
        Decision::Send(span) => span,
    };
    let reply = match span {
        Span::Whole => Reply::new(StatusCode::OK).body(Body::FilePart {
            file,
            len: meta.len(),
        }),
        Span::Part { start, len } => match file.seek(SeekFrom::Start(start)) {
            Ok(_) => partial(start, len, meta).body(Body::FilePart { file, len }),
            Err(_) => return not_found(),
        },
        Span::Unsatisfiable => return unsatisfiable(meta),
    };
    with_validators(reply, &validators)
        .header(CONTENT_TYPE, content_type(name))
        .header(ACCEPT_RANGES, HeaderValue::from_static("bytes"))
}

fn with_validators(reply: Reply, validators: &Validators) -> Reply {
    let modified = httpdate::fmt_http_date(validators.modified);
    let reply = with_text(reply, ETAG, &validators.etag);
    with_text(reply, LAST_MODIFIED, &modified)
}

fn partial(start: u64, len: u64, meta: &Metadata) -> Reply {
    let range = format!("bytes {start}-{}/{}", start + len - 1, meta.len());
    with_text(
        Reply::new(StatusCode::PARTIAL_CONTENT),
        CONTENT_RANGE,
        &range,
    )
}

fn unsatisfiable(meta: &Metadata) -> Reply {
    let reply = text(StatusCode::RANGE_NOT_SATISFIABLE, "Range Not Satisfiable\n");
    with_text(reply, CONTENT_RANGE, &format!("bytes */{}", meta.len()))
}

/// Adds a header built from text (these are all ASCII; one that were not would be left out).
fn with_text(reply: Reply, name: HeaderName, value: &str) -> Reply {
    match HeaderValue::from_str(value) {
        Ok(value) => reply.header(name, value),
        Err(_) => reply,
    }
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    HeaderValue::from_str(mime.as_ref())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// 301 to the same path with a `/` added (and the query kept).
fn redirect_to_slash(env: &Environ) -> Reply {
    let path = format!("/{}/", env.raw_path().trim_start_matches('/'));
    let location = match env.query_string() {
        "" => path,
        query => format!("{path}?{query}"),
    };
    let reply = text(StatusCode::MOVED_PERMANENTLY, "Moved Permanently\n");
    match HeaderValue::from_str(&location) {
        Ok(location) => reply.header(LOCATION, location),
        Err(_) => not_found(),
    }
}

fn not_found() -> Reply {
    text(StatusCode::NOT_FOUND, "Not Found\n")
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    Reply::text(status, Bytes::from_static(body.as_bytes()))
}
