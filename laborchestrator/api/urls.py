"""Everything under /api/: one router for the collections, plus auth, the schema and the docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter, SimpleRouter
from rest_framework_simplejwt.views import TokenRefreshView

from accounts.api.views import MeView, TokenObtainView
from labfiles.api import LabExportView, LabImportView
from labs.api.views import InstanceViewSet, LabMachineViewSet, LabViewSet, VMImageViewSet
from tutorials.api.views import (
    TutorialMediaViewSet,
    TutorialPageViewSet,
    TutorialStepViewSet,
    TutorialViewSet,
)

router = DefaultRouter()
router.include_root_view = False
router.register("images", VMImageViewSet, basename="image")
router.register("labs", LabViewSet, basename="lab")
router.register("instances", InstanceViewSet, basename="instance")
router.register("tutorials", TutorialViewSet, basename="tutorial")
router.register("media", TutorialMediaViewSet, basename="tutorial-media")

SLUG = "[-a-zA-Z0-9_]+"
nested_router = SimpleRouter()
nested_router.register(rf"labs/(?P<lab_slug>{SLUG})/machines", LabMachineViewSet, basename="lab-machine")
nested_router.register(
    rf"tutorials/(?P<tutorial_slug>{SLUG})/pages", TutorialPageViewSet, basename="tutorial-page"
)
nested_router.register(
    rf"tutorials/(?P<tutorial_slug>{SLUG})/steps", TutorialStepViewSet, basename="tutorial-step"
)

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="token_obtain_pair"),
    path("auth/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("me/", MeView.as_view(), name="me"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Labs as files (labfiles/): a lab as a zip, and the import of one.
    path("lab-files/", LabImportView.as_view(), name="lab-files-import"),
    path("lab-files/<slug:slug>/", LabExportView.as_view(), name="lab-files-export"),
    path("", include(router.urls)),
    path("", include(nested_router.urls)),
]
