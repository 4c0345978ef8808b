"""The command line (`claimtriage`), above training/ and serving/."""
