"""The HTTP service: the built site, the subscriber pages and the admin API (create_app in syndicate.web.app)."""
