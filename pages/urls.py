from django.urls import path

from pages import urls_live, views, views_catalog, views_export

app_name = "connections"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("connect/", views_catalog.catalog, name="catalog"),
    path("connect/<slug:slug>/", views.connect_start, name="connect_start"),
    path("callback/<slug:slug>/", views.callback, name="callback"),
    path("<uuid:connection_id>/", views.connection_detail, name="detail"),
    path("<uuid:connection_id>/reconnect/", views.reconnect, name="reconnect"),
    path("<uuid:connection_id>/disconnect/", views.disconnect, name="disconnect"),
    path("<uuid:connection_id>/revoke/", views.revoke_retry, name="revoke_retry"),
    path("<uuid:connection_id>/name/", views.rename, name="rename"),
    path("<uuid:connection_id>/archive/", views.archive, name="archive"),
    path("<uuid:connection_id>/remove/", views.remove, name="remove"),
    path("<uuid:connection_id>/history.csv", views_export.history_csv, name="export_history"),
    path("<uuid:connection_id>/uptime.csv", views_export.uptime_csv, name="export_uptime"),
    path("archived/", views.archived, name="archived"),
    path("request/<slug:slug>/", views_catalog.broker_request, name="broker_request"),
]
urlpatterns += urls_live.urlpatterns
