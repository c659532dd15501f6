from django.urls import path

from partners import views

app_name = "partners"

urlpatterns = [
    path("", views.connect, name="connect"),
    path("s/<str:token>/", views.open_link, name="open"),
    path("start/<slug:slug>/", views.start, name="start"),
    path("app/<uuid:app_id>.css", views.app_style, name="app_style"),
]
