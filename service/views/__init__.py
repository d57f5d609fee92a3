"""HTTP blueprints, one per area; views stay thin and call into bandits/ and assets/."""
