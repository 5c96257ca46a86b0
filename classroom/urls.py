from django.urls import path

from classroom import views

app_name = "classroom"

LAB = "labs/<slug:slug>/"
COURSE = "courses/<int:platform_id>/<str:context_id>/"
CLASS = "classes/<int:class_id>/"

urlpatterns = [
    path("", views.index, name="index"),
    path(LAB, views.class_page, name="lab"),
    path(f"{LAB}state", views.class_state_json, name="lab-state"),
    path(f"{LAB}actions", views.class_actions, name="lab-actions"),
    path(f"{LAB}export.csv", views.class_export, name="lab-export"),
    path(COURSE, views.class_page, name="course"),
    path(f"{COURSE}state", views.class_state_json, name="course-state"),
    path(f"{COURSE}actions", views.class_actions, name="course-actions"),
    path(f"{COURSE}export.csv", views.class_export, name="course-export"),
    path(CLASS, views.class_page, name="class"),
    path(f"{CLASS}state", views.class_state_json, name="class-state"),
    path(f"{CLASS}actions", views.class_actions, name="class-actions"),
    path(f"{CLASS}export.csv", views.class_export, name="class-export"),
    path("instances/<int:pk>/tutorial", views.student_tutorial, name="student-tutorial"),
    path("my/instances/<int:pk>/notices", views.student_notices, name="student-notices"),
    path("my/instances/<int:pk>/position", views.student_position, name="student-position"),
]
