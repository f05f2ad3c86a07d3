"""The baseline for benchmarks/webhooks.py: a Flask POST endpoint that reads the body and answers 202."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

PATH = "/webhooks/zendesk"  # the same path as Deskpilot's, so the load generator needs no switch


def create_app() -> Flask:
    """The bare app; gunicorn: `gunicorn "benchmarks.bare_app:create_app()"`."""
    app = Flask(__name__)

    @app.post(PATH)
    def receive() -> tuple[Response, int]:
        request.get_data()
        return jsonify({"status": "queued"}), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app
