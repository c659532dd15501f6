from django import forms


class CatalogSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search brokers")

    def cleaned_query(self) -> str:
        return (self.cleaned_data.get("q") or "").strip().lower()
