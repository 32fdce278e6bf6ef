"""Messages to members: templates, the outbox, channels (email, SMS) and the sender. See services.py."""
