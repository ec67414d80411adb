"""Processing provider ``think2seg`` and its algorithms (no GUI code: registered from initProcessing)."""
