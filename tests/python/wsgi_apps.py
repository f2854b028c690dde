"""WSGI applications for tests/python.rs."""
import threading
import wsgiref.validate

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
    keys = ['PATH_INFO', 'QUERY_STRING', 'SERVER_PORT', 'CONTENT_LENGTH', 'HTTP_X_TWICE']
    return [('%s=%r\n' % (k, environ.get(k))).encode('latin-1') for k in keys]


BARRIER = threading.Barrier(10, timeout=10)


def meet(environ, start_response):
    """Answers only once ten requests are in the application at the same time."""
    BARRIER.wait()
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'met']


def sized_echo(environ, start_response):
    """Reads exactly CONTENT_LENGTH bytes (the validator wants read() given a size)."""
    body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [body]


validated_hello = wsgiref.validate.validator(hello)
validated_echo = wsgiref.validate.validator(sized_echo)


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
