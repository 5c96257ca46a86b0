from django.urls import path

from labfiles import views

app_name = "labfiles"

urlpatterns = [
    path("import/", views.import_files, name="import"),
    path("<slug:slug>.zip", views.export_zip, name="export"),
]
