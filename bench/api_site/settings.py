"""The product's settings with one change for bench.api: ROOT_URLCONF adds /bench/bare/, the baseline endpoint served
by the same process, middleware and DRF as the API. Nothing here is part of the product's URLs."""
from config.settings import *  # noqa: F403 - the product's settings, unchanged but for the URLs

ROOT_URLCONF = "bench.api_site.urls"
