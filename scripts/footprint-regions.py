#!/usr/bin/env python3
"""Make core/data/footprint/regions.csv, the grid table `ipw compare --footprint` reads.

Inputs (both from CodeCarbon, MIT licence, https://github.com/mlco2/codecarbon):
  global_energy_mix.json          commit 4f166a5593132480ae545a54fb61f69d0f58b68b: per country,
                                  Our World in Data's electricity mix and carbon intensity
                                  (OWID from Ember and the Energy Institute, CC BY 4.0)
  water_consumption_per_source.json  commit 1e8153a48dad7323c5395dcbc3a62d36fdd88ade: life-cycle
                                  water consumption per source, US gal/MWh (Meldrum et al.
                                  2013, Environ. Res. Lett. 8 015031)

Water per kWh is the generation-weighted mean of the sources with a factor (coal, gas,
nuclear, solar, wind; geothermal is not broken out in the mix); hydro, oil, bioenergy and other
sources count as zero, so it is a lower bound, and `water_counted_share` says how much of the
country's generation it covers.

    python3 scripts/footprint-regions.py global_energy_mix.json water_consumption_per_source.json
"""
import csv
import json
import sys

GAL_PER_MWH_TO_L_PER_KWH = 3.785411784 / 1000.0
mix = json.load(open(sys.argv[1]))
water = json.load(open(sys.argv[2]))
assert water["unit"] == "gal us Water.eq/MWh", water["unit"]
factors = {  # mix column -> factor key
    "coal_TWh": "coal",
    "gas_TWh": "natural_gas",
    "nuclear_TWh": "nuclear",
    "solar_TWh": "solar",
    "wind_TWh": "wind",
}
out = csv.writer(open("core/data/footprint/regions.csv", "w", newline=""), lineterminator="\n")
out.writerow(["region", "name", "year", "g_co2e_per_kwh", "water_l_per_kwh", "water_counted_share"])
for code in sorted(mix):
    c = mix[code]
    total = c.get("total_TWh") or 0.0
    if c.get("carbon_intensity") is None or total <= 0:
        continue
    counted = sum(c.get(k) or 0.0 for k in factors)
    litres = sum((c.get(k) or 0.0) * water[f] for k, f in factors.items()) / total
    out.writerow([
        code,
        c["country_name"],
        c["year"],
        f'{c["carbon_intensity"]:.3f}',
        f"{litres * GAL_PER_MWH_TO_L_PER_KWH:.4f}",
        f"{counted / total:.3f}",
    ])
