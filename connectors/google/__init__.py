"""Google: Calendar, Gmail, push."""
