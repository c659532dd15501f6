from django.urls import path

from ops import views

app_name = "ops"

urlpatterns = [
    path("health/", views.health_live, name="health_live"),
    path("health/ready/", views.health_ready, name="health_ready"),
    path("health/service/<str:name>/", views.health_service, name="health_service"),
    path("health/check/", views.health_check_now, name="health_check"),
    path("metrics", views.metrics_view, name="metrics"),
    path("ops/alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge_view, name="alert_acknowledge"),
]
