from django.urls import path

from sandbox import views

app_name = "sandbox"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("oauth/authorize", views.authorize, name="authorize"),
    path("oauth/token", views.token, name="token"),
    path("oauth/revoke", views.revoke, name="revoke"),
    path(".well-known/oauth-authorization-server", views.metadata, name="metadata"),
    path(".well-known/openid-configuration", views.openid_configuration, name="openid_configuration"),
    path("oidc/userinfo", views.userinfo, name="userinfo"),
    path("v1/account", views.account, name="account"),
    path("control/", views.control_page, name="control"),
    path("control/clients/<str:client_id>/", views.control_client, name="control_client"),
    path("control/api/clients", views.api_clients, name="api_clients"),
    path("control/api/clients/<str:client_id>", views.api_client, name="api_client"),
    path("control/api/clients/<str:client_id>/faults", views.api_faults, name="api_faults"),
    path("control/api/clients/<str:client_id>/counters", views.api_counters, name="api_counters"),
    path("control/api/clients/<str:client_id>/revoke-all", views.api_revoke_all, name="api_revoke_all"),
    path("control/api/users", views.api_users, name="api_users"),
]
