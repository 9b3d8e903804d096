//! Extended-protocol parameters as quoted, cast SQL literals.

use super::*;

/// The literal SQL for a parameter of type `ty` (`None`: undeclared) holding
/// `value` (`None`: NULL), cast to the declared type so that the result's
/// type does not depend on the value.
pub(super) fn literal(
    ty: Option<&Type>,
    value: Option<&[u8]>,
    binary: bool,
) -> PgWireResult<String> {
    let cast = ty.and_then(sql_type);
    let Some(bytes) = value else {
        return Ok(format!("CAST(NULL AS {})", cast.unwrap_or("VARCHAR")));
    };
    let text = if binary {
        binary_parameter(ty, bytes)?
    } else {
        std::str::from_utf8(bytes)
            .map_err(|_| error("ERROR", "22021", "a parameter is not valid UTF-8".into()))?
            .to_owned()
    };
    if text.contains('\0') {
        return Err(error(
            "ERROR",
            "22021",
            "a parameter holds a NUL byte".into(),
        ));
    }
    // Backslashes are not escapes (standard_conforming_strings is on, and the
    // engine's dialect agrees): doubling the quotes is the whole of quoting.
    let quoted = format!("'{}'", text.replace('\'', "''"));
    Ok(match cast {
        Some(cast) => format!("CAST({quoted} AS {cast})"),
        None => quoted,
    })
}

/// The SQL type to cast a declared parameter to; none for the text types
/// (and any other), whose values are string literals.
pub(super) fn sql_type(ty: &Type) -> Option<&'static str> {
    Some(match *ty {
        Type::BOOL => "BOOLEAN",
        Type::INT2 => "SMALLINT",
        Type::INT4 => "INT",
        Type::INT8 => "BIGINT",
        Type::FLOAT4 => "REAL",
        Type::FLOAT8 => "DOUBLE",
        Type::NUMERIC => "NUMERIC",
        Type::DATE => "DATE",
        Type::TIME => "TIME",
        Type::TIMESTAMP => "TIMESTAMP",
        Type::TIMESTAMPTZ => "TIMESTAMP WITH TIME ZONE",
        Type::INTERVAL => "INTERVAL",
        _ => return None,
    })
}

/// A binary-format parameter as text.
pub(super) fn binary_parameter(ty: Option<&Type>, bytes: &[u8]) -> PgWireResult<String> {
    let bad = || {
        error(
            "ERROR",
            "22P03",
            format!(
                "invalid binary parameter of type {}",
                ty.map_or("text", |t| t.name())
            ),
        )
    };
    fn array<const N: usize>(bytes: &[u8], bad: impl Fn() -> PgWireError) -> PgWireResult<[u8; N]> {
        bytes.try_into().map_err(|_| bad())
    }
    Ok(match ty {
        Some(&Type::BOOL) => match bytes {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => return Err(bad()),
        },
        Some(&Type::INT2) => i16::from_be_bytes(array(bytes, bad)?).to_string(),
        Some(&Type::INT4) => i32::from_be_bytes(array(bytes, bad)?).to_string(),
        Some(&Type::INT8) => i64::from_be_bytes(array(bytes, bad)?).to_string(),
        Some(&Type::FLOAT4) => f32::from_be_bytes(array(bytes, bad)?).to_string(),
        Some(&Type::FLOAT8) => f64::from_be_bytes(array(bytes, bad)?).to_string(),
        // Days and microseconds since 2000-01-01, and since midnight.
        Some(&Type::DATE) => {
            let days = i32::from_be_bytes(array(bytes, bad)?);
            postgres_epoch()
                .date()
                .checked_add_signed(chrono::TimeDelta::days(days.into()))
                .ok_or_else(bad)?
                .to_string()
        }
        Some(&Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
            let micros = i64::from_be_bytes(array(bytes, bad)?);
            let time = postgres_epoch()
                .checked_add_signed(chrono::TimeDelta::microseconds(micros))
                .ok_or_else(bad)?;
            let zone = if ty == Some(&Type::TIMESTAMPTZ) {
                "Z"
            } else {
                ""
            };
            format!("{}{zone}", time.format("%Y-%m-%dT%H:%M:%S%.6f"))
        }
        Some(&Type::TIME) => {
            let micros = i64::from_be_bytes(array(bytes, bad)?);
            if !(0..86_400_000_000).contains(&micros) {
                return Err(bad());
            }
            let time = chrono::NaiveTime::MIN + chrono::TimeDelta::microseconds(micros);
            time.format("%H:%M:%S%.6f").to_string()
        }
        None
        | Some(&Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME | &Type::UNKNOWN) => {
            String::from_utf8(bytes.to_vec()).map_err(|_| bad())?
        }
        Some(other) => {
            return Err(error(
                "ERROR",
                "0A000",
                format!(
                    "binary parameters of type {} are not supported; send it in text format",
                    other.name()
                ),
            ));
        }
    })
}

pub(super) fn postgres_epoch() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("a valid date")
        .and_time(chrono::NaiveTime::MIN)
}
