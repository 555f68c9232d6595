"""
Odometry from the sensors a CARLA leaderboard agent gets: GNSS, IMU and speedometer.

The leaderboard (and Bench2Drive) gives an agent no odometry; the planner and the CARLA control
node need nav_msgs/Odometry in the frame of the route (the bridge's `map`: x east, y north,
ROS convention). GnssImuOdometry is a small filter over one sensor set per tick:

- GNSS latitude / longitude -> metres with CARLA's own geo-reference, the spherical Mercator
  projection of carla::geom::GeoLocation (the GNSS sensor) and of the leaderboard's route
  conversion, scaled at the map's reference latitude lat0 (s = cos(lat0), R = 6378137 m):
      x = s R (lon - lon0) pi / 180
      y = s R (ln tan(pi/4 + lat/2) - ln tan(pi/4 + lat0/2))
  CARLA's y (south) is the ROS map's -y, so this is the bridge's map frame. lat0 / lon0 is the
  town's OpenDRIVE geoReference (`world.get_map().transform_to_geolocation(carla.Location())`).
- heading: the gyro's yaw rate integrated, pulled towards the IMU's orientation (a
  complementary filter, `heading_gain` per tick);
- position: a Kalman filter per axis (isotropic variance) predicting with speedometer speed
  along the heading and correcting with the GNSS fix (`gnss_sigma`); the process noise is the
  speed's uncertainty (`speed_sigma`) and the heading's (`heading_sigma`) over the step.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

EARTH_RADIUS = 6378137.0     # [m] CARLA's EARTH_RADIUS_EQUA
MAX_STEP = 1.0               # [s] a longer (or negative) gap is a new start


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


@dataclasses.dataclass(frozen=True)
class GeoReference:
    """The map's geo-reference: latitude / longitude [deg] of its origin."""

    lat: float = 0.0
    lon: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.lat) and -85.0 < self.lat < 85.0):
            raise ValueError(f'lat_ref must be in (-85, 85) degrees, got {self.lat}')
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise ValueError(f'lon_ref must be in [-180, 180] degrees, got {self.lon}')

    @property
    def scale(self) -> float:
        return math.cos(math.radians(self.lat))

    @staticmethod
    def _mercator_y(lat: float) -> float:
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    def to_local(self, lat: float, lon: float) -> Tuple[float, float]:
        """(x east, y north) [m] in the map frame of a GNSS fix [deg]."""
        r = self.scale * EARTH_RADIUS
        return (r * math.radians(lon - self.lon),
                r * (self._mercator_y(lat) - self._mercator_y(self.lat)))

    def to_geo(self, x: float, y: float) -> Tuple[float, float]:
        """(lat, lon) [deg] of a map point (the inverse of to_local)."""
        r = self.scale * EARTH_RADIUS
        my = y / r + self._mercator_y(self.lat)
        lat = math.degrees(2 * math.atan(math.exp(my)) - math.pi / 2)
        return lat, self.lon + math.degrees(x / r)


@dataclasses.dataclass
class OdometryConfig:
    """Filter settings; errors name the field (the node parameter)."""

    gnss_sigma: float = 0.5         # [m] GNSS noise per axis (leaderboard: ~0.55 m)
    speed_sigma: float = 0.2        # [m/s] speedometer uncertainty (process noise)
    heading_sigma: float = 0.02     # [rad] heading uncertainty (process noise across track)
    heading_gain: float = 0.05      # weight of the IMU orientation per update (0: gyro only)

    def __post_init__(self):
        for name in ('gnss_sigma', 'speed_sigma', 'heading_sigma'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')
        if not (0.0 <= self.heading_gain <= 1.0):
            raise ValueError(f'heading_gain must be in [0, 1], got {self.heading_gain}')


@dataclasses.dataclass(frozen=True)
class OdometryEstimate:
    """The ego's state in the map frame."""

    t: float
    x: float
    y: float
    yaw: float
    speed: float
    yaw_rate: float
    position_sigma: float    # [m] the filter's standard deviation per axis


class GnssImuOdometry:
    """One sensor set per tick in, the ego's pose and twist out (module docstring)."""

    def __init__(self, geo: GeoReference = GeoReference(),
                 config: Optional[OdometryConfig] = None):
        self.geo = geo
        self.config = config or OdometryConfig()
        self.reset()

    def reset(self) -> None:
        self.state: Optional[OdometryEstimate] = None
        self.variance = 0.0

    def update(self, t: float, lat: float, lon: float, yaw: Optional[float],
               yaw_rate: float, speed: float) -> OdometryEstimate:
        """Fuse one tick: GNSS [deg], IMU orientation yaw [rad] (None: none), rates, speed."""
        c = self.config
        gx, gy = self.geo.to_local(lat, lon)
        prev = self.state
        dt = None if prev is None else t - prev.t
        if dt is None or not 0.0 <= dt <= MAX_STEP:
            if yaw is None:
                raise ValueError('the first sensor set needs the IMU orientation')
            self.variance = c.gnss_sigma ** 2
            self.state = OdometryEstimate(t, gx, gy, _wrap(yaw), speed, yaw_rate, c.gnss_sigma)
            return self.state
        # Heading: gyro between ticks (mean of the two rates), pulled towards the IMU's yaw.
        heading = prev.yaw + 0.5 * (prev.yaw_rate + yaw_rate) * dt
        if yaw is not None:
            heading += c.heading_gain * _wrap(yaw - heading)
        heading = _wrap(heading)
        # Position: dead reckoning along the mean heading, then the GNSS correction.
        mean_yaw = prev.yaw + 0.5 * _wrap(heading - prev.yaw)
        step = 0.5 * (prev.speed + speed) * dt
        px, py = prev.x + step * math.cos(mean_yaw), prev.y + step * math.sin(mean_yaw)
        self.variance += (c.speed_sigma * dt) ** 2 + (c.heading_sigma * step) ** 2
        gain = self.variance / (self.variance + c.gnss_sigma ** 2)
        self.variance *= 1.0 - gain
        self.state = OdometryEstimate(t, px + gain * (gx - px), py + gain * (gy - py), heading,
                                      speed, yaw_rate, math.sqrt(self.variance))
        return self.state
