app_name = "tutorials"
urlpatterns: list = []
