"""WSGI applications for tests/python.rs."""
import io
import os
import tempfile
import threading
import time
import warnings
import wsgiref.validate

# The validator's warnings are failures here, not lines on stderr.
warnings.simplefilter('error', wsgiref.validate.WSGIWarning)

CLOSED = []


def hello(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'Hello, World!']


def echo(environ, start_response):
    body = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [body]


def lines(environ, start_response):
    got = list(environ['wsgi.input'])
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'%d lines\n' % len(got)] + got


class Closing:
    """An iterable that records that close() was called."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        CLOSED.append(True)


def closing(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return Closing([b'a', b'b', b'c'])


def closed_count(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [str(len(CLOSED)).encode()]


def boom(environ, start_response):
    raise RuntimeError('boom')


def writer(environ, start_response):
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'written ')
    return [b'then returned']


def exc_info(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    try:
        raise ValueError('late')
    except ValueError:
        import sys
        start_response('500 Oops', [('Content-Type', 'text/plain')], sys.exc_info())
    return [b'replaced']


def environ_keys(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    keys = ['PATH_INFO', 'QUERY_STRING', 'SERVER_PORT', 'CONTENT_LENGTH', 'HTTP_X_TWICE',
            'SERVER_SOFTWARE', 'wsgi.input_terminated']
    return [('%s=%r\n' % (k, environ.get(k))).encode('latin-1') for k in keys]


def systemd_env(environ, start_response):
    """What subprocesses would inherit of systemd's hand-over: its variables, the socket."""
    start_response('200 OK', [('Content-Type', 'text/plain')])
    names = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET']
    inherited = [n for n in names if n in os.environ]
    if os.get_inheritable(3):
        inherited.append('fd 3')
    return [' '.join(inherited).encode()]


def faithful(environ, start_response):
    """The keys that follow the request-target, Host, Cookie and a trusted proxy (in ASCII),
    PATH_INFO's bytes in hex; a header value given with whitespace around it."""
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Set-Cookie', '  csrftoken=abc; Path=/ ')])
    keys = ['REQUEST_URI', 'RAW_URI', 'PATH_INFO', 'QUERY_STRING', 'HTTP_HOST', 'SERVER_NAME',
            'SERVER_PORT', 'HTTP_COOKIE', 'wsgi.url_scheme', 'HTTPS', 'REMOTE_ADDR']
    lines = ['%s=%a\n' % (k, environ.get(k)) for k in keys]
    lines.append('path bytes=%s\n' % environ['PATH_INFO'].encode('latin-1').hex())
    return [''.join(lines).encode('ascii')]


BARRIER = threading.Barrier(10, timeout=10)


def sleep_together(environ, start_response):
    """Once ten requests are in the application at the same time (or fails), each sleeps
    0.2 s and answers when its sleep began and ended."""
    BARRIER.wait()
    began = time.monotonic()
    time.sleep(0.2)
    ended = time.monotonic()
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'%f %f' % (began, ended)]


def streamed(environ, start_response):
    """A generator that calls start_response lazily, inside the iteration."""
    start_response('200 OK', [('Content-Type', 'text/plain')])
    for part in (b'one ', b'', b'two ', b'three'):
        yield part


STREAM_CLOSED = []


class Broken:
    """Fails after its first chunk; records close()."""

    def __iter__(self):
        yield b'first '
        raise RuntimeError('failed mid-body')

    def close(self):
        STREAM_CLOSED.append(True)


def broken(environ, start_response):
    if environ['PATH_INFO'] == '/closed':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [str(len(STREAM_CLOSED)).encode()]
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return Broken()


def short(environ, start_response):
    """Declares 10 bytes and sends 5."""
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '10')])
    return iter([b'12345'])


READING = threading.Event()


def upload_or_probe(environ, start_response):
    """/upload reads its whole body; any other path says whether an upload is being read."""
    start_response('200 OK', [('Content-Type', 'text/plain')])
    if environ['PATH_INFO'] == '/upload':
        READING.set()
        body = environ['wsgi.input'].read()
        READING.clear()
        return [b'%d' % len(body)]
    return [b'reading' if READING.is_set() else b'idle']


# 100 KiB with every byte value (over 16 KiB, so the server uses sendfile for it).
DATA = bytes(range(256)) * 400
DATA_PATH = os.path.join(tempfile.mkdtemp(prefix='skyrocket-wsgi-'), 'data.bin')
with open(DATA_PATH, 'wb') as f:
    f.write(DATA)
# A sparse 32 MiB file of zeros, for a client that reads slowly.
BIG_PATH = os.path.join(os.path.dirname(DATA_PATH), 'big.bin')
with open(BIG_PATH, 'wb') as f:
    f.truncate(32 * 1024 * 1024)
FILES_CLOSED = []


class TrackedFile(io.FileIO):
    """A real file that records close() under a tag."""

    def __init__(self, path, tag):
        super().__init__(path)
        self.tag = tag

    def close(self):
        if not self.closed:
            FILES_CLOSED.append(self.tag)
        super().close()


def file_wrapped(environ, start_response):
    """wsgi.file_wrapper over: a buffered file read 10 bytes into (/whole), with a declared
    Content-Length shorter (/declared) or longer (/longer) than the rest, an in-memory file
    (/memory), a large file (/big); /closed counts the files closed with the query string as
    their tag."""
    path = environ['PATH_INFO']
    tag = environ['QUERY_STRING']
    headers = [('Content-Type', 'application/octet-stream')]
    if path == '/closed':
        start_response('200 OK', headers)
        return [b'%d' % FILES_CLOSED.count(tag)]
    if path == '/memory':
        filelike = io.BytesIO(DATA)
    elif path == '/big':
        filelike = TrackedFile(BIG_PATH, tag)
    else:
        filelike = io.BufferedReader(TrackedFile(DATA_PATH, tag))
        filelike.read(10)
    if path == '/declared':
        headers.append(('Content-Length', '1000'))
    if path == '/longer':
        headers.append(('Content-Length', str(len(DATA))))
    start_response('200 OK', headers)
    return environ['wsgi.file_wrapper'](filelike, 4096)


def _read_all(stream):
    """The whole body, with read(size) only (the validator allows no other form)."""
    parts = []
    while True:
        part = stream.read(8192)
        if not part:
            return b''.join(parts)
        parts.append(part)


def _stream():
    for part in (b'one ', b'two ', b'three'):
        yield part


def routes(environ, start_response):
    """One application for every case the validator should see."""
    path = environ['PATH_INFO']
    plain = [('Content-Type', 'text/plain')]
    if path == '/echo':
        body = _read_all(environ['wsgi.input'])
        start_response('200 OK', plain)
        return [body]
    if path == '/stream':
        start_response('200 OK', plain)
        return _stream()
    if path == '/write':
        start_response('200 OK', plain)(b'written, ')
        return [b'returned']
    if path == '/exc_info':
        start_response('200 OK', plain)
        try:
            raise ValueError('replaced')
        except ValueError:
            import sys
            start_response('500 Internal Server Error', plain, sys.exc_info())
        return [b'replaced']
    if path == '/file':
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return environ['wsgi.file_wrapper'](open(DATA_PATH, 'rb'))
    start_response('200 OK', plain)
    return [b'Hello, World!']


validated_routes = wsgiref.validate.validator(routes)


def declared(environ, start_response):
    """Declared lengths: /list and /generator declare 3 bytes and return more; /head declares
    1234 and returns them only to GET; /bare declares nothing and returns nothing to HEAD."""
    path = environ['PATH_INFO']
    is_head = environ['REQUEST_METHOD'] == 'HEAD'
    if path == '/list':
        start_response('200 OK', [('Content-Length', '3')])
        return (b'abc', b'defgh')
    if path == '/generator':
        start_response('200 OK', [('Content-Length', '3')])
        return (part for part in (b'ab', b'cdef', b'gh'))
    if path == '/head':
        start_response('200 OK', [('Content-Length', '1234')])
        return [] if is_head else [b'x' * 1234]
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [] if is_head else [b'bare']


def bad_headers(environ, start_response):
    """start_response refuses statuses and headers that cannot be sent, where the application
    can see it."""
    refused = []
    for header in [('X-Split', 'a\r\nInjected: 1'), ('Bad Name', 'x'), ('X-Nul', 'a\0b')]:
        try:
            start_response('200 OK', [header])
        except ValueError:
            refused.append(header[0])
    for status in ['1234 Big', '100 Continue', '200 OK\r\nInjected: 1', 'OK']:
        try:
            start_response(status, [])
        except ValueError:
            refused.append(status.split()[0])
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [', '.join(refused).encode()]
