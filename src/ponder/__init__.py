"""ponder: how much inference-time compute should each request get?"""

__version__ = "0.1.0"
