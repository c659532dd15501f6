"""Mounted by config/urls.py with include("api.urls") (a string: config imports no app).
The app name is the API's namespace, which its docs page reverses."""

from api import views_connect  # noqa: F401 - registers the connect-session and end-user operations
from api.views import api

urlpatterns = api.urls[0]
app_name = api.urls_namespace
