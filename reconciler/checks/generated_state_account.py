# Generated from schemas/state.schema.json ($defs/account) by fastjsonschema: do not edit.
# Regenerate: python3 dev.py test tests/test_schema_checks.py --update-golden
# mypy: ignore-errors
SCHEMA_DIGEST = "f43ff2eb58333aa4f77895abfcbbb6ce5645478ca7b1397278550865e9664d59"
VERSION = "2.22.3"
from reconciler.checks.refusal import Decimal
import re
from reconciler.checks.refusal import JsonSchemaValueException, JsonSchemaValuesException


REGEX_PATTERNS = {
    '^[0-9]{1,19}$': re.compile('^[0-9]{1,19}\\Z')
}

NoneType = type(None)

def validate(data, custom_formats={}, name_prefix=None):
    if not isinstance(data, (dict)):
        raise JsonSchemaValueException("" + (name_prefix or "data") + " must be object", value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'http://json-schema.org/draft-07/schema#', 'type': 'object', 'required': ['name', 'email', 'role_ids', 'enabled'], 'additionalProperties': False, 'properties': {'name': {'type': 'string'}, 'email': {'type': 'string'}, 'role_ids': {'type': 'array', 'items': {'type': 'string', 'pattern': '^[0-9]{1,19}$'}}, 'enabled': {'type': 'boolean'}, 'last_task_id': {'type': 'string'}, 'created_at': {'type': 'string'}, 'updated_at': {'type': 'string'}, 'source_commit': {'type': 'string'}, 'adopted': {'type': 'boolean', 'description': 'true: recorded by `import`, its attributes never verified on the tenant; the next plan adopts it (a MODIFY with every attribute). Absent: applied by reconciler.'}}}, rule='type')
    data_is_dict = isinstance(data, dict)
    if data_is_dict:
        data__missing_keys = set(['name', 'email', 'role_ids', 'enabled']) - data.keys()
        if data__missing_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'http://json-schema.org/draft-07/schema#', 'type': 'object', 'required': ['name', 'email', 'role_ids', 'enabled'], 'additionalProperties': False, 'properties': {'name': {'type': 'string'}, 'email': {'type': 'string'}, 'role_ids': {'type': 'array', 'items': {'type': 'string', 'pattern': '^[0-9]{1,19}$'}}, 'enabled': {'type': 'boolean'}, 'last_task_id': {'type': 'string'}, 'created_at': {'type': 'string'}, 'updated_at': {'type': 'string'}, 'source_commit': {'type': 'string'}, 'adopted': {'type': 'boolean', 'description': 'true: recorded by `import`, its attributes never verified on the tenant; the next plan adopts it (a MODIFY with every attribute). Absent: applied by reconciler.'}}}, rule='required')
        data_keys = set(data.keys())
        if "name" in data_keys:
            data_keys.remove("name")
            data__name = data["name"]
            if not isinstance(data__name, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".name must be string", value=data__name, name="" + (name_prefix or "data") + ".name", definition={'type': 'string'}, rule='type')
        if "email" in data_keys:
            data_keys.remove("email")
            data__email = data["email"]
            if not isinstance(data__email, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".email must be string", value=data__email, name="" + (name_prefix or "data") + ".email", definition={'type': 'string'}, rule='type')
        if "role_ids" in data_keys:
            data_keys.remove("role_ids")
            data__roleids = data["role_ids"]
            if not isinstance(data__roleids, (list, tuple)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".role_ids must be array", value=data__roleids, name="" + (name_prefix or "data") + ".role_ids", definition={'type': 'array', 'items': {'type': 'string', 'pattern': '^[0-9]{1,19}$'}}, rule='type')
            data__roleids_is_list = isinstance(data__roleids, (list, tuple))
            if data__roleids_is_list:
                data__roleids_len = len(data__roleids)
                for data__roleids_x, data__roleids_item in enumerate(data__roleids):
                    if not isinstance(data__roleids_item, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".role_ids[{data__roleids_x}]".format(**locals()) + " must be string", value=data__roleids_item, name="" + (name_prefix or "data") + ".role_ids[{data__roleids_x}]".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[0-9]{1,19}$'}, rule='type')
                    if isinstance(data__roleids_item, str):
                        if not REGEX_PATTERNS['^[0-9]{1,19}$'].search(data__roleids_item):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".role_ids[{data__roleids_x}]".format(**locals()) + " must match pattern ^[0-9]{1,19}$", value=data__roleids_item, name="" + (name_prefix or "data") + ".role_ids[{data__roleids_x}]".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[0-9]{1,19}$'}, rule='pattern')
        if "enabled" in data_keys:
            data_keys.remove("enabled")
            data__enabled = data["enabled"]
            if not isinstance(data__enabled, (bool)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".enabled must be boolean", value=data__enabled, name="" + (name_prefix or "data") + ".enabled", definition={'type': 'boolean'}, rule='type')
        if "last_task_id" in data_keys:
            data_keys.remove("last_task_id")
            data__lasttaskid = data["last_task_id"]
            if not isinstance(data__lasttaskid, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".last_task_id must be string", value=data__lasttaskid, name="" + (name_prefix or "data") + ".last_task_id", definition={'type': 'string'}, rule='type')
        if "created_at" in data_keys:
            data_keys.remove("created_at")
            data__createdat = data["created_at"]
            if not isinstance(data__createdat, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".created_at must be string", value=data__createdat, name="" + (name_prefix or "data") + ".created_at", definition={'type': 'string'}, rule='type')
        if "updated_at" in data_keys:
            data_keys.remove("updated_at")
            data__updatedat = data["updated_at"]
            if not isinstance(data__updatedat, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".updated_at must be string", value=data__updatedat, name="" + (name_prefix or "data") + ".updated_at", definition={'type': 'string'}, rule='type')
        if "source_commit" in data_keys:
            data_keys.remove("source_commit")
            data__sourcecommit = data["source_commit"]
            if not isinstance(data__sourcecommit, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".source_commit must be string", value=data__sourcecommit, name="" + (name_prefix or "data") + ".source_commit", definition={'type': 'string'}, rule='type')
        if "adopted" in data_keys:
            data_keys.remove("adopted")
            data__adopted = data["adopted"]
            if not isinstance(data__adopted, (bool)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".adopted must be boolean", value=data__adopted, name="" + (name_prefix or "data") + ".adopted", definition={'type': 'boolean', 'description': 'true: recorded by `import`, its attributes never verified on the tenant; the next plan adopts it (a MODIFY with every attribute). Absent: applied by reconciler.'}, rule='type')
        if data_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must not contain "+str(data_keys)+" properties", value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'http://json-schema.org/draft-07/schema#', 'type': 'object', 'required': ['name', 'email', 'role_ids', 'enabled'], 'additionalProperties': False, 'properties': {'name': {'type': 'string'}, 'email': {'type': 'string'}, 'role_ids': {'type': 'array', 'items': {'type': 'string', 'pattern': '^[0-9]{1,19}$'}}, 'enabled': {'type': 'boolean'}, 'last_task_id': {'type': 'string'}, 'created_at': {'type': 'string'}, 'updated_at': {'type': 'string'}, 'source_commit': {'type': 'string'}, 'adopted': {'type': 'boolean', 'description': 'true: recorded by `import`, its attributes never verified on the tenant; the next plan adopts it (a MODIFY with every attribute). Absent: applied by reconciler.'}}}, rule='additionalProperties')
    return data
