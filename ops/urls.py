from django.urls import path

from ops import views, views_system

app_name = "ops"

urlpatterns = [
    path("health/", views.health_live, name="health_live"),
    path("health/ready/", views.health_ready, name="health_ready"),
    path("health/service/<str:name>/", views.health_service, name="health_service"),
    path("health/check/", views.health_check_now, name="health_check"),
    path("metrics", views.metrics_view, name="metrics"),
    # The staff page keeps the address it always had (ops' routes are mounted at the root).
    path("connections/system/", views_system.system_status, name="system_status"),
    path("ops/alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge_view, name="alert_acknowledge"),
]
