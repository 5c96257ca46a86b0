from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from laborchestrator import health

urlpatterns = [
    # Kubernetes probes (deploy/k8s/deployment.yaml): liveness and readiness.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/", include(("laborchestrator.api.urls", "api"))),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("tutorials/", include("tutorials.urls")),
    # The student's pages: lab catalog at /, instance pages, embeddable views.
    path("", include("portal.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
