from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.permissions import IsAuthenticated
from rest_framework_simplejwt.views import TokenObtainPairView

from accounts.api.serializers import MeSerializer


@extend_schema(summary="The signed-in user")
class MeView(generics.RetrieveAPIView):
    serializer_class = MeSerializer
    permission_classes = [IsAuthenticated]

    def get_object(self):
        return self.request.user


@extend_schema(
    summary="Obtain a JWT pair",
    description="`username` may be the user name or the email address. Send the `access` token as "
    "`Authorization: Bearer <access>`; renew it with the `refresh` token at /api/auth/token/refresh/.",
)
class TokenObtainView(TokenObtainPairView):
    pass
