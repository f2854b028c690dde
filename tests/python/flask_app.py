"""A Flask application for tests/flask.rs, served by skyrocket and by gunicorn alike."""
import os

from flask import (Flask, abort, jsonify, redirect, request, send_file,
                   stream_with_context)

app = Flask(__name__)


class Refused(Exception):
    """An application error that has its own handler."""


@app.errorhandler(404)
def not_found(error):
    return f'nothing at {request.path}\n', 404


@app.errorhandler(Refused)
def refused(error):
    return jsonify(error=str(error)), 422


@app.get('/')
def index():
    return '<h1>index</h1>\n'


@app.post('/form')
def form():
    langs = ', '.join(request.form.getlist('lang'))
    return f"{request.form['name']}: {langs}\n"


@app.post('/upload')
def upload():
    upload = request.files['file']
    data = upload.read()
    return jsonify(name=upload.filename, size=len(data), sum=sum(data) % 65536)


@app.post('/json')
def json_sum():
    numbers = request.get_json()['numbers']
    return jsonify(sum=sum(numbers), count=len(numbers))


@app.get('/stream')
def stream():
    count = request.args.get('n', default=3, type=int)

    def generate():
        for i in range(count):
            yield f'line {i} of {request.path}\n'

    return app.response_class(stream_with_context(generate()), mimetype='text/plain')


@app.get('/refused')
def refuse():
    raise Refused('not today')


@app.get('/crash')
def crash():
    raise RuntimeError('unhandled')


@app.get('/gone')
def gone():
    abort(410)


@app.get('/redirect')
def go_home():
    return redirect('/')


@app.get('/cookie')
def cookie():
    response = jsonify(seen=request.cookies.get('visit'))
    response.set_cookie('visit', 'yes', httponly=True)
    return response


@app.get('/file')
def a_file():
    return send_file(os.path.abspath(__file__), mimetype='text/x-python')
