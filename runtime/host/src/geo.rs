//! Where a client is, from MaxMind-format databases the operator provides
//! (`[geo] databases` in node.toml: GeoLite2/GeoIP2 City or Country, and
//! ASN). Each database is read into memory once at start; a lookup walks
//! its search tree (a few hundred nanoseconds) and is made only when a
//! handler asks.

use maxminddb::Reader;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What the databases know about an address. Names are English.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Geo {
    /// ISO 3166-1 alpha-2 country code (`FR`).
    pub country: Option<String>,
    /// Continent code (`EU`).
    pub continent: Option<String>,
    /// City name.
    pub city: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organization.
    pub as_org: Option<String>,
}

/// The node's geo databases.
pub struct GeoDb {
    readers: Vec<(PathBuf, Reader<Vec<u8>>)>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<&Path> = self
            .readers
            .iter()
            .map(|(path, _)| path.as_path())
            .collect();
        f.debug_struct("GeoDb").field("databases", &paths).finish()
    }
}

/// The fields Outpost reads from a City, Country or ASN record.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    continent: Option<Place<'a>>,
    #[serde(borrow)]
    city: Option<Place<'a>>,
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<&'a str>,
}

#[derive(Deserialize)]
struct Place<'a> {
    iso_code: Option<&'a str>,
    code: Option<&'a str>,
    #[serde(borrow)]
    names: Option<BTreeMap<&'a str, &'a str>>,
}

impl Place<'_> {
    fn english(&self) -> Option<String> {
        self.names
            .as_ref()?
            .get("en")
            .map(|name| (*name).to_owned())
    }
}

impl GeoDb {
    /// Reads the databases at `paths`.
    pub fn open(paths: &[PathBuf]) -> Result<Self, String> {
        let readers = paths
            .iter()
            .map(|path| {
                Reader::open_readfile(path)
                    .map(|reader| (path.clone(), reader))
                    .map_err(|err| {
                        format!("{}: not a readable MaxMind database: {err}", path.display())
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { readers })
    }

    /// What the databases say about `ip`; `None` if none lists it. A
    /// database that fails on the address is skipped (and logged): a
    /// lookup never fails the request.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let mut geo = Geo::default();
        let mut found = false;
        for (path, reader) in &self.readers {
            let record = match reader.lookup::<Record<'_>>(ip) {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(err) => {
                    tracing::debug!("geo lookup of {ip} in {}: {err}", path.display());
                    continue;
                }
            };
            found = true;
            if let Some(country) = &record.country {
                geo.country = geo.country.or(country.iso_code.map(str::to_owned));
            }
            if let Some(continent) = &record.continent {
                geo.continent = geo.continent.or(continent.code.map(str::to_owned));
            }
            if let Some(city) = &record.city {
                geo.city = geo.city.or(city.english());
            }
            geo.asn = geo.asn.or(record.autonomous_system_number);
            geo.as_org = geo
                .as_org
                .or(record.autonomous_system_organization.map(str::to_owned));
        }
        found.then_some(geo)
    }
}
