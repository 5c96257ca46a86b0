from django.urls import path

from portal import views

app_name = "portal"

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("instances/<int:pk>/", views.instance_page, name="instance"),
    # Embeddable: only the sites in EMBED_ALLOWED_ORIGINS may frame these (portal/embedding.py).
    path("embed/instances/<int:pk>/", views.embed_instance, name="embed-instance"),
    path("embed/labs/<slug:slug>/", views.embed_lab, name="embed-lab"),
]
