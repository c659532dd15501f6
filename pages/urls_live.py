"""Routes of the live connection pages, appended to pages/urls.py."""

from django.urls import path

from pages import views_live

urlpatterns = [
    path("stream/", views_live.stream, name="stream"),
    path("summary/", views_live.summary, name="summary"),
    path("<uuid:connection_id>/stream/", views_live.connection_stream, name="connection_stream"),
    path("<uuid:connection_id>/card/", views_live.card, name="card"),
    path("<uuid:connection_id>/panel/", views_live.panel, name="panel"),
    path("<uuid:connection_id>/check/", views_live.check_now, name="check_now"),
]
