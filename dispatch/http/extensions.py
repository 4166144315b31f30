"""The HTTP layer's extension objects (login sessions, CSRF), bound to the app in
`create_app`."""

from flask_login import LoginManager
from flask_wtf import CSRFProtect

login_manager = LoginManager()
csrf = CSRFProtect()
