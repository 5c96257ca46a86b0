from django.apps import AppConfig


class VncProxyConfig(AppConfig):
    name = "vncproxy"
    verbose_name = "Console proxy"
