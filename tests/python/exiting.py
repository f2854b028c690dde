"""An application that, asked GET /?PATH, registers an exit function writing to PATH."""
import atexit
import urllib.parse


def _write(path):
    with open(path, 'w') as f:
        f.write('exit functions ran')


def app(environ, start_response):
    path = urllib.parse.unquote(environ['QUERY_STRING'])
    atexit.register(_write, path)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'registered']
