from django.urls import path

from connections import urls_live, views

app_name = "connections"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("connect/", views.catalog, name="catalog"),
    path("connect/<slug:slug>/", views.connect_start, name="connect_start"),
    path("callback/<slug:slug>/", views.callback, name="callback"),
    path("<uuid:connection_id>/", views.connection_detail, name="detail"),
    path("<uuid:connection_id>/reconnect/", views.reconnect, name="reconnect"),
    path("<uuid:connection_id>/disconnect/", views.disconnect, name="disconnect"),
]
urlpatterns += urls_live.urlpatterns
