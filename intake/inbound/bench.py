"""Reference endpoints for ``bench/webhook.py``, mounted only with ``INTAKE_BENCH_ENDPOINTS=1``.

They bracket the real webhook's cost in the same process: ``/bench/echo`` reads the body and
answers (the framework's ceiling), ``/bench/insert`` inserts the body into the same database and
commits (the floor cost of durability). The table lives outside the models, so migrations never
see it.
"""

from __future__ import annotations

from flask import Flask, Response, request
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table

from intake.runtime import Runtime

_metadata = MetaData()
bench_bodies = Table(
    "bench_bodies",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("body", LargeBinary, nullable=False),
)


def register_bench(app: Flask, rt: Runtime) -> None:
    _metadata.create_all(rt.db.engine, checkfirst=True)

    def echo() -> Response:
        body = request.get_data(cache=False)
        return Response(f"{len(body)}\n", status=200, mimetype="text/plain")

    def insert() -> Response:
        body = request.get_data(cache=False)
        with rt.db.engine.begin() as conn:
            conn.execute(bench_bodies.insert().values(body=body))
        return Response("ok\n", status=200, mimetype="text/plain")

    app.add_url_rule("/bench/echo", "bench_echo", echo, methods=["POST"])
    app.add_url_rule("/bench/insert", "bench_insert", insert, methods=["POST"])
