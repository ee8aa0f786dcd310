"""The yardstick for the webhook: a truly minimal durable endpoint, as its own tiny Flask app.

    BENCH_REFERENCE_DSN='host=127.0.0.1 user=postgres dbname=test' \
        gunicorn --workers 4 --chdir bench reference_app:app

``POST /insert`` reads the body, INSERTs it with plain psycopg on a connection the worker process
opened once, COMMITs and answers: the least any endpoint that keeps what it was sent must do.
``POST /echo`` reads the body and answers: Flask's ceiling on this machine. Nothing of intake is
imported (no SQLAlchemy, no pool, no ping), so the comparison in bench/webhook.py does not
flatter intake. The table is created by the benchmark before the server starts.
"""

from __future__ import annotations

import os

import psycopg
from flask import Flask, Response, request

app = Flask(__name__)
_connection: psycopg.Connection | None = None


def connection() -> psycopg.Connection:
    # One connection per gunicorn worker, opened after the fork on first use.
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["BENCH_REFERENCE_DSN"])
    return _connection


@app.post("/echo")
def echo() -> Response:
    body = request.get_data(cache=False)
    return Response(f"{len(body)}\n", mimetype="text/plain")


@app.post("/insert")
def insert() -> Response:
    body = request.get_data(cache=False)
    conn = connection()
    conn.execute("INSERT INTO bench_bodies (body) VALUES (%s)", (body,))
    conn.commit()
    return Response("ok\n", mimetype="text/plain")
