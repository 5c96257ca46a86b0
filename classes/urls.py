from django.urls import path

from classes import views

app_name = "classes"

urlpatterns = [
    path("", views.class_list, name="list"),
    path("new/", views.class_create, name="create"),
    path("<int:pk>/", views.class_detail, name="detail"),
    path("<int:pk>/new-code/", views.class_new_code, name="new-code"),
    path("<int:pk>/import/", views.class_import, name="import"),
    path("join/", views.join_with_code, name="join-with-code"),
    path("join/<str:code>/", views.join, name="join"),
    path("sign-in/<str:token>/", views.sign_in_link, name="sign-in-link"),
    path("set-password/", views.set_password, name="set-password"),
]
