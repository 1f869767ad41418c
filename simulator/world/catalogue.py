"""Static tables of the synthetic world: map, cities, countries, merchant categories, hour profiles.

Kept apart from the populations so that behaviour code and tests can read the same constants,
and so that tuning the world (how risky a category is, how far a city lies) is one edit in one place.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------
# Map and countries
# ---------------------------------------------------------------------------------------------
MAP_WIDTH_KM = 4000.0
MAP_HEIGHT_KM = 2500.0

HOME_COUNTRY = 0
#: Countries are regions of the map: the west (x < 2600 km) is the home country 0, the east is
#: split in three bands. A location's country therefore follows from where it is, so travelling
#: far east is what produces a country mismatch.
COUNTRY_BORDER_X_KM = 2600.0
COUNTRY_BANDS_Y_KM = (800.0, 1600.0)
N_COUNTRIES = 4

#: City centres (km). Six cities in the home country, one in each foreign country.
CITY_XY = np.array(
    [
        [600.0, 1500.0],
        [1400.0, 900.0],
        [1900.0, 1900.0],
        [1000.0, 400.0],
        [2200.0, 700.0],
        [300.0, 600.0],
        [3000.0, 400.0],
        [3300.0, 1200.0],
        [3500.0, 2100.0],
    ]
)
N_CITIES = len(CITY_XY)
#: Share of customers living in each city.
CITY_POPULATION = np.array([0.25, 0.19, 0.15, 0.10, 0.10, 0.08, 0.05, 0.04, 0.04])


def country_of(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Country code (int8) of map locations; vectorised."""
    x = np.asarray(x)
    y = np.asarray(y)
    east = np.where(y < COUNTRY_BANDS_Y_KM[0], 1, np.where(y < COUNTRY_BANDS_Y_KM[1], 2, 3))
    return np.where(x < COUNTRY_BORDER_X_KM, HOME_COUNTRY, east).astype(np.int8)


CITY_COUNTRY = country_of(CITY_XY[:, 0], CITY_XY[:, 1])


def clip_to_map(xy: np.ndarray) -> np.ndarray:
    """Keep (n, 2) locations inside the map, in place, and return them."""
    np.clip(xy[:, 0], 0.0, MAP_WIDTH_KM, out=xy[:, 0])
    np.clip(xy[:, 1], 0.0, MAP_HEIGHT_KM, out=xy[:, 1])
    return xy


# ---------------------------------------------------------------------------------------------
# Merchant categories
# ---------------------------------------------------------------------------------------------
CATEGORY_NAMES: tuple[str, ...] = (
    "grocery",
    "fuel",
    "restaurants",
    "online_retail",
    "electronics",
    "travel",
    "gambling",
    "digital_goods",
    "jewellery",
    "utilities",
)
N_CATEGORIES = len(CATEGORY_NAMES)
GROCERY, FUEL, RESTAURANTS, ONLINE_RETAIL, ELECTRONICS, TRAVEL, GAMBLING, DIGITAL_GOODS, JEWELLERY, UTILITIES = range(
    N_CATEGORIES
)

#: How often an average customer buys in each category (a Dirichlet centre per customer).
CATEGORY_PREFERENCE = np.array([0.26, 0.12, 0.18, 0.14, 0.035, 0.025, 0.02, 0.08, 0.01, 0.13])
CATEGORY_PREFERENCE = CATEGORY_PREFERENCE / CATEGORY_PREFERENCE.sum()
#: Log-offset of a purchase amount relative to the customer's typical amount.
CATEGORY_AMOUNT_LOG_OFFSET = np.array([0.0, 0.2, -0.3, 0.2, 1.6, 2.0, 0.0, -1.2, 1.9, 0.7])
#: Share of purchases in a category made in person (card present); the rest are online.
CATEGORY_PHYSICAL_SHARE = np.array([0.97, 0.99, 0.92, 0.0, 0.55, 0.25, 0.35, 0.0, 0.75, 0.05])
#: Share of merchants in each category.
CATEGORY_MERCHANT_SHARE = np.array([0.22, 0.10, 0.20, 0.12, 0.06, 0.05, 0.04, 0.08, 0.04, 0.09])
CATEGORY_MERCHANT_SHARE = CATEGORY_MERCHANT_SHARE / CATEGORY_MERCHANT_SHARE.sum()
#: Base risk level of a category (0..1); merchants scatter around it. Fraudsters prefer risky ones.
CATEGORY_RISK = np.array([0.10, 0.10, 0.10, 0.30, 0.50, 0.40, 0.70, 0.70, 0.60, 0.05])

# ---------------------------------------------------------------------------------------------
# Time of day
# ---------------------------------------------------------------------------------------------
SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86_400


def _hour_profile(peak: float, width: float, floor: float) -> np.ndarray:
    hours = np.arange(24) + 0.5
    gap = np.abs(hours - peak)
    gap = np.minimum(gap, 24.0 - gap)
    weights = floor + np.exp(-0.5 * (gap / width) ** 2)
    return weights / weights.sum()


#: Customers' preferred-hour profiles: day workers, night owls, early birds.
HOUR_PROFILE_NAMES: tuple[str, ...] = ("day_worker", "night_owl", "early_bird")
HOUR_PROFILES = np.stack(
    [
        _hour_profile(peak=14.5, width=3.8, floor=0.015),
        _hour_profile(peak=22.0, width=3.5, floor=0.04),
        _hour_profile(peak=10.0, width=3.3, floor=0.015),
    ]
)
HOUR_PROFILE_SHARE = np.array([0.62, 0.14, 0.24])

#: Fraudsters' start-hour profiles: online fraud skews to the night, in-person fraud follows shops.
FRAUD_HOURS_ONLINE = 0.45 * np.full(24, 1.0 / 24) + 0.55 * _hour_profile(peak=2.5, width=3.5, floor=0.0)
FRAUD_HOURS_IN_PERSON = _hour_profile(peak=15.0, width=4.5, floor=0.02)
