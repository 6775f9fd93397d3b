"""What notifications tell the apps that listen (operating counts deliveries), so that
notifications imports none of them."""

from django.dispatch import Signal

# Sent after each try of a delivery is recorded, with `outcome`: "delivered", "retrying" (it
# will be tried again) or "failed" (the retry window closed).
delivery_attempted = Signal()
