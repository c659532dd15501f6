from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from connections.selectors import connection_list_for_user


@login_required
def dashboard(request):
    connections = list(connection_list_for_user(user=request.user))
    return render(request, "connections/dashboard.html", {"connections": connections})
