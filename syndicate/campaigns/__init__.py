"""Campaigns: one-off Markdown messages to the active subscribers of some categories, through the outbox."""

from syndicate.campaigns._campaigns import VARIANTS, Campaign, CampaignError, Campaigns, CampaignStatus, NewCampaign

__all__ = ["VARIANTS", "Campaign", "CampaignError", "CampaignStatus", "Campaigns", "NewCampaign"]
