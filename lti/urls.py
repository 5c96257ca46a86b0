from django.urls import path

from lti import views

app_name = "lti"

urlpatterns = [
    path("login/", views.login_initiation, name="login"),
    path("launch/", views.launch, name="launch"),
    path("jwks/", views.jwks, name="jwks"),
    path("deep-linking/<str:token>/", views.deep_linking_pick, name="deep-linking"),
    path("activities/<int:pk>/progress/", views.course_progress_page, name="course-progress"),
    path("configuration/", views.configuration, name="configuration"),
]
