from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from laborchestrator import health
from labs import health as labs_health
from portal import views as portal_views
from tutorials.views import media_file

urlpatterns = [
    # Kubernetes probes (deploy/k8s/deployment.yaml): liveness and readiness.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # The cluster's health, separately: an outage degrades starts, never the site (labs/health.py).
    path("healthz/cluster", labs_health.cluster_health, name="cluster-health"),
    path("metrics", labs_health.metrics, name="metrics"),
    path("api/", include(("laborchestrator.api.urls", "api"))),
    # Labs as files from the admin: export a lab as a zip, import one (labfiles/views.py).
    path("admin/lab-files/", include("labfiles.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("tutorials/", include("tutorials.urls")),
    # Classes: staff pages, the sign-up link and one-time sign-in links (classes/views.py).
    path("classes/", include("classes.urls")),
    # Instructors' live class view (classroom/), and the students' banner it feeds.
    path("classroom/", include("classroom.urls")),
    # LTI 1.3 tool: OIDC login, launch, JWKS, deep linking (lti/README.md).
    path("lti/", include("lti.urls")),
    path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", media_file, name="media"),
    # The student's pages: lab catalog at /, instance pages, embeddable views.
    path("favicon.ico", portal_views.favicon, name="favicon"),
    path("", include("portal.urls")),
]
