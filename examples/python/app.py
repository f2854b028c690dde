"""An example Flask application for skyrocket (docs/python.md tells how to run it):

    skyrocket --app app:app --pythonpath examples/python --bind 127.0.0.1:8000
"""
import time

from flask import Flask, Response, jsonify, render_template_string, request

app = Flask(__name__)

PAGE = """<!doctype html>
<title>skyrocket + Flask</title>
<h1>Hello{% if name %}, {{ name }}{% endif %}!</h1>
<form method="post" action="/greet">
  <input name="name" placeholder="your name"> <button>Greet</button>
</form>
<p><a href="/countdown">a streamed countdown</a> · <a href="/slow?seconds=0.5">a slow page</a></p>
"""


@app.get('/')
def index():
    return render_template_string(PAGE)


@app.post('/greet')
def greet():
    return render_template_string(PAGE, name=request.form.get('name', ''))


@app.post('/api/sum')
def api_sum():
    numbers = request.get_json(force=True).get('numbers', [])
    return jsonify(sum=sum(numbers), count=len(numbers))


@app.get('/countdown')
def countdown():
    def lines():
        for i in range(5, 0, -1):
            yield f'{i}\n'
            time.sleep(0.2)
        yield 'lift-off\n'

    return Response(lines(), mimetype='text/plain')


@app.get('/slow')
def slow():
    """Waits (without the GIL: other requests run meanwhile), as a database call would."""
    seconds = min(request.args.get('seconds', default=0.2, type=float), 5.0)
    time.sleep(seconds)
    return f'slept {seconds} s\n'


@app.errorhandler(404)
def not_found(error):
    return jsonify(error='not found', path=request.path), 404
