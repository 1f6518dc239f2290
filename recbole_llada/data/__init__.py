"""Dataset preparation (official files -> RecBole atomic files) and RecBole dataset helpers."""
