from django.urls import path

from preferences import views

app_name = "preferences"

urlpatterns = [
    path("", views.settings_page, name="settings"),
    path("notifications/", views.notifications_save, name="notifications"),
    path("notifications/test/", views.notification_test, name="notification_test"),
    path("channels/", views.channel_add, name="channel_add"),
    path("channels/<uuid:channel_id>/remove/", views.channel_remove, name="channel_remove"),
    path("time-zone/", views.time_zone_save, name="time_zone"),
]
