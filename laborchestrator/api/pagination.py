from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=<n>` and `?page_size=<n>` (at most 200; default: REST_FRAMEWORK["PAGE_SIZE"])."""

    page_size_query_param = "page_size"
    max_page_size = 200
