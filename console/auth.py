"""Console sign-in: Flask-Login sessions, Flask-WTF CSRF, a login rate limit shared by all processes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

import console
from console import data

# After this many failed sign-ins for one address or from one client within the
# window, further attempts (right or wrong) get 429 until the window has passed.
MAX_FAILURES = 10
WINDOW = timedelta(minutes=15)

login_manager = LoginManager()
login_manager.login_view = "console.login"
login_manager.login_message = "Please sign in to see the console."
login_manager.session_protection = "strong"
csrf = CSRFProtect()


class Admin(UserMixin):
    def __init__(self, user_id: int, email: str) -> None:
        self.id = user_id
        self.email = email


@login_manager.user_loader
def _load(user_id: str) -> Admin | None:
    try:
        row = data.get_user(console.store(), int(user_id))
    except (TypeError, ValueError):
        return None
    return None if row is None else Admin(row["id"], row["email"])


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    # CSRF checks only the console's forms (views.py calls csrf.protect() before each
    # of its requests): webhooks and the bearer-token API carry no session cookie.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)

    @app.errorhandler(CSRFError)
    def _csrf_error(err: CSRFError) -> tuple[str, int]:
        return render_template("console/error.html", title="Session expired",
                               message=f"{err.description} Reload the page and try again."), 400


def _client_keys(email: str) -> list[str]:
    return [f"email:{(email or '').strip().lower()}", f"ip:{request.remote_addr or 'unknown'}"]


def _safe_next(target: str | None) -> str:
    """Only same-site paths under the console (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/console/"):
            return target
    return url_for("console.board")


def login() -> Any:
    form = LoginForm()
    status = 200
    if request.method == "POST":
        keys = _client_keys(form.email.data or "")
        now = console.now()
        if data.failures(console.store(), keys, now - WINDOW) >= MAX_FAILURES:
            minutes = int(WINDOW.total_seconds() // 60)
            return render_template("console/login.html", form=form,
                                   error=f"Too many failed sign-ins. Try again in {minutes} minutes."), 429
        if form.validate_on_submit():
            user = data.check_login(console.store(), form.email.data, form.password.data, now)
            if user is not None:
                data.clear_failures(console.store(), keys[:1])
                login_user(Admin(user["id"], user["email"]))
                return redirect(_safe_next(request.args.get("next")))
            data.record_failure(console.store(), keys, now)
        status = 401
        return render_template("console/login.html", form=form, error="Wrong email or password."), status
    return render_template("console/login.html", form=form, error=None), status


@login_required
def logout() -> Response:
    logout_user()
    flash("Signed out.")
    return redirect(url_for("console.login"))
