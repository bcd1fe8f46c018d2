"""Default configuration and demo catalog shipped with billing-oss."""
